"""`pcaq bulk-issue` pipelines its calls: no thread waits for a certificate to be signed.

A narrow unit test with a stand-in for the botocore client (the integration tests run the real tool
against the real service): it records the order of the calls, answers IssueCertificate at once and
says "in progress" to the first GetCertificate of each certificate.
"""

from __future__ import annotations

import json

import pytest

from pcaq.cli import bulk_issue, bulk_schedule
from tests.bulk_fakes import CA, FakeClient, args_for


def run_with(monkeypatch, tmp_path, client: FakeClient, names: list[str], concurrency: int):
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("\n".join(f'{{"name": "{n}", "csr": "{n}"}}' for n in names))
    monkeypatch.setattr(bulk_issue, "make_client", lambda *a: client)
    return bulk_issue.run(args_for(tmp_path, jsonl, concurrency))


def test_new_requests_flow_while_earlier_ones_are_signed(monkeypatch, tmp_path):
    client = FakeClient()
    names = [f"n{i}" for i in range(20)]
    summary = run_with(monkeypatch, tmp_path, client, names, concurrency=1)
    assert summary.issued == 20 and not summary.failed
    # One thread: every IssueCertificate went out before the first certificate was collected (a
    # thread that waited for each certificate would alternate issue, get, get, issue, ...).
    first_get = client.calls.index(("get", "n0"))
    assert [kind for kind, _ in client.calls[:first_get]] == ["issue"] * 20
    assert client.calls.count(("get", "n7")) == 2  # in progress once, then collected
    out = tmp_path / "out"
    assert (out / "n7.pem").read_text() == "cert n7\n" and (out / "n7.chain.pem").read_text() == "chain\n"
    assert bulk_issue.Outputs(out).journalled_arn("n7") == f"{CA}/certificate/n7"  # journalled on the answer


def test_a_journalled_request_is_only_collected_and_failures_are_kept(monkeypatch, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.arn").write_text(f"{CA}/certificate/old\n")  # answered in an interrupted run
    client = FakeClient(fail={"bad"})
    summary = run_with(monkeypatch, tmp_path, client, ["old", "bad", "new"], concurrency=4)
    assert summary.issued == 2 and set(summary.failed) == {"bad"}
    assert ("issue", "old") not in client.calls and ("get", "old") in client.calls
    assert summary.failed["bad"].startswith("MalformedCSRException")
    assert (out / "bad.error").exists() and not (out / "bad.pem").exists()


def test_a_concurrency_below_one_is_refused_with_a_message(tmp_path):
    args = args_for(tmp_path, tmp_path / "none.jsonl", concurrency=0)
    with pytest.raises(SystemExit, match="--concurrency must be at least 1"):
        bulk_issue.main(args)


def test_the_first_poll_waits_about_as_long_as_certificates_have_taken(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(bulk_schedule.time, "monotonic", lambda: now[0])
    schedule = bulk_schedule.Schedule([], max_polls=100)
    assert schedule.first_wait() == bulk_schedule.FIRST_POLL  # nothing known yet: poll soon
    job = bulk_issue.Job("n", b"csr")

    def collected_after(seconds: float) -> None:
        schedule.signing(job, "arn", None)
        now[0] += seconds
        poll = schedule.due()
        assert poll is not None and poll.arn == "arn"
        schedule.collected(poll)

    for _ in range(60):  # a service with a backlog: certificates come a second after their request
        collected_after(1.0)
    assert 0.75 <= schedule.first_wait() <= 0.8  # polled a little before the usual age, not at 50 ms
    for _ in range(300):  # the backlog is gone: certificates come at the first poll (a few hundred
        collected_after(schedule.first_wait())  # certificates: well under a second of a bulk run)
    assert schedule.first_wait() == bulk_schedule.FIRST_POLL  # back to polling soon
    for _ in range(60):
        collected_after(30.0)
    assert schedule.first_wait() == bulk_schedule.LAST_POLL  # never longer than the longest wait
    # A certificate from an earlier run (journalled) is polled at once and does not count.
    schedule.journalled(job, "old")
    poll = schedule.due()
    assert poll is not None and poll.issued_at is None
    schedule.collected(poll)
    assert schedule.first_wait() == bulk_schedule.LAST_POLL


def test_arns_go_to_one_append_only_journal_that_a_rerun_resumes_from(monkeypatch, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    # An interrupted run's journal: one ARN, then a line cut short by the crash.
    (out / ".journal-1").write_text(f'["old", "{CA}/certificate/old"]\n["cut", "arn:aws:acm-pca:us')
    client = FakeClient()
    summary = run_with(monkeypatch, tmp_path, client, ["old", "cut", "new"], concurrency=2)
    assert summary.issued == 3
    assert ("issue", "old") not in client.calls and ("get", "old") in client.calls
    assert ("issue", "cut") in client.calls  # sent again: its idempotency token makes that safe
    assert not list(out.glob("*.arn"))  # no file per ARN any more
    journals = [p for p in out.iterdir() if p.name.startswith(".journal-") and p.name != ".journal-1"]
    assert len(journals) == 1  # this run's, one line per ARN answered
    assert sorted(json.loads(line)[0] for line in journals[0].read_text().splitlines()) == ["cut", "new"]


def test_an_answer_in_progress_pauses_polls_then_probes_one_at_a_time(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(bulk_schedule.time, "monotonic", lambda: now[0])
    schedule = bulk_schedule.Schedule([], max_polls=100)
    a, b, c = (bulk_issue.Job(n, n.encode()) for n in "abc")
    for job in (a, b, c):
        schedule.signing(job, job.name, None)
    now[0] += bulk_schedule.FIRST_POLL
    first = schedule.due()
    assert first is not None and first.job is a
    schedule.signing(a, "a", first)  # a is still being signed: so are b and c, asked for after it
    assert schedule.due() is None  # b's poll is due, but polls pause
    now[0] += bulk_schedule.HOLD
    now[0] += bulk_schedule.HOLD  # a's own next poll is due too
    probe = schedule.due()
    assert probe is not None
    assert schedule.due() is None  # one probe at a time
    assert schedule.wait() > 0  # ... and the callers sleep till its answer comes, not spin on a due poll
    schedule.collected(probe)  # the service caught up
    assert {schedule.due().job, schedule.due().job, probe.job} == {a, b, c}  # the others go out again


def in_progress_until_backed_off(schedule, now, poll, times: int):
    """``poll`` answers "in progress" ``times`` times over (each retry polled when its time comes)."""
    for _ in range(times):
        schedule.signing(poll.job, poll.arn, poll)
        now[0] = max(now[0] + bulk_schedule.HOLD, min(p.at for p in schedule._polls))
        poll = schedule.due()
    return poll


def test_a_certificate_that_comes_brings_forward_those_asked_for_before_it(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(bulk_schedule.time, "monotonic", lambda: now[0])
    schedule = bulk_schedule.Schedule([], max_polls=100)
    a, b = bulk_issue.Job("a", b"a"), bulk_issue.Job("b", b"b")
    schedule.signing(a, "a", None)
    now[0] += bulk_schedule.FIRST_POLL
    poll_a = in_progress_until_backed_off(schedule, now, schedule.due(), 5)
    assert poll_a is not None and poll_a.job is a
    schedule.signing(a, "a", poll_a)  # in progress again: a's next poll is 0.64 s away
    schedule.signing(b, "b", None)  # b is asked for after a
    now[0] += bulk_schedule.FIRST_POLL
    poll_b = schedule.due()
    assert poll_b is not None and poll_b.job is b
    assert schedule.due() is None  # a's time has not come
    schedule.collected(poll_b)  # b came: a, asked for before it, is signed too
    again = schedule.due()
    assert again is not None and again.job is a  # now, not at its backed-off time


def test_once_every_csr_is_sent_probes_go_out_without_waiting_for_backed_off_polls(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(bulk_schedule.time, "monotonic", lambda: now[0])
    schedule = bulk_schedule.Schedule([], max_polls=100)
    assert schedule.next_job() is None  # every CSR is sent
    job = bulk_issue.Job("last", b"last")
    schedule.signing(job, "last", None)
    now[0] += bulk_schedule.FIRST_POLL
    poll = schedule.due()
    holds = []
    for _ in range(6):  # the last certificate of the run is still being signed
        schedule.signing(job, "last", poll)
        started = now[0]
        assert schedule.due() is None  # a pause after each answer "in progress"
        now[0] += schedule.wait()  # ... as long as the caller is told to sleep
        poll = schedule.due()
        assert poll is not None and poll.job is job  # probed, though its own poll is backed off
        holds.append(round(now[0] - started, 3))
    assert poll.at > now[0]  # (its backed-off time had not come)
    assert holds == [0.02, 0.04, 0.08, 0.08, 0.08, 0.08]  # growing to LAST_PROBE, no further
    schedule.collected(poll)
    assert schedule._hold == bulk_schedule.HOLD  # the next answer "in progress" pauses briefly again
