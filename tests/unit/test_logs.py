"""JSON log lines (shared/platform/logs.py): one object per line, with the request id and extra fields."""

from __future__ import annotations

import io
import json
import logging

import pytest

from pcaq.platform import logs
from pcaq.platform.settings import load


@pytest.fixture
def json_logger():
    """The root logger writing JSON to a buffer; restored afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    buffer = io.StringIO()
    logs.set_request_id(None)  # an earlier test's request may have left its id in this thread
    logs.configure(logs.JSON, "DEBUG", stream=buffer)
    yield buffer
    root.handlers, root.level = saved
    logs.set_request_id(None)


def _lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_each_line_is_one_json_object_with_the_fields(json_logger):
    log = logging.getLogger("pcaq.test")
    log.info("signed %d of %d", 3, 4, extra={"ca_id": "abc", "count": 3})
    log.warning('line\nbreak "quoted"')
    first, second = _lines(json_logger)
    assert first["message"] == "signed 3 of 4" and first["level"] == "INFO" and first["logger"] == "pcaq.test"
    assert first["ca_id"] == "abc" and first["count"] == 3
    assert first["time"].endswith("+00:00") and "T" in first["time"]
    assert "request_id" not in first
    assert second["message"] == 'line\nbreak "quoted"'


def test_the_current_request_id_is_on_every_line_until_replaced(json_logger):
    log = logging.getLogger("pcaq.test")
    logs.set_request_id("rid-1")
    log.info("one")
    log.info("explicit", extra={"request_id": "rid-from-record"})
    logs.set_request_id(None)
    log.info("none")
    one, explicit, none = _lines(json_logger)
    assert one["request_id"] == "rid-1"
    assert explicit["request_id"] == "rid-from-record"
    assert "request_id" not in none


def test_exceptions_are_kept_in_one_line(json_logger):
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("pcaq.test").exception("failed")
    (line,) = json_logger.getvalue().splitlines()
    doc = json.loads(line)
    assert doc["message"] == "failed" and "ValueError: boom" in doc["exception"]


def test_text_mode_leaves_logging_that_someone_else_configured_alone():
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    theirs = logging.StreamHandler(io.StringIO())
    try:
        root.handlers = [theirs]
        logs.configure(logs.TEXT, "DEBUG")
        assert root.handlers == [theirs] and root.level == saved[1]
        root.handlers = []
        buffer = io.StringIO()
        logs.configure(logs.TEXT, "WARNING", stream=buffer)
        logging.getLogger("pcaq.test").warning("plain")
        assert " WARNING pcaq.test plain" in buffer.getvalue() and root.level == logging.WARNING
    finally:
        root.handlers, root.level = saved


def test_every_lets_one_line_through_per_interval_and_counts_the_rest():
    now = [100.0]
    every = logs.Every(5.0, clock=lambda: now[0])
    assert every.due() == 0
    assert every.due() is None and every.due() is None
    now[0] += 5.0
    assert every.due() == 2


def test_most_verbose_level():
    assert logs.most_verbose("INFO", "DEBUG") == logging.DEBUG
    assert logs.most_verbose(logging.WARNING, "error") == logging.WARNING
    assert logs.most_verbose("nonsense") == logging.INFO


def test_the_log_format_setting_is_checked():
    assert load({"PCAQ_LOG_FORMAT": "JSON"}).log_format == "json"
    assert load({}).log_format == "text"
    with pytest.raises(SystemExit, match="PCAQ_LOG_FORMAT must be one of text, json"):
        load({"PCAQ_LOG_FORMAT": "xml"})
