"""Request ids: version 4 UUIDs from pooled random bytes, never repeated, not even across a fork."""

from __future__ import annotations

import os
import uuid

from pcaq.api.dispatch import new_request_id


def test_request_ids_are_uuid4_and_unique():
    ids = [new_request_id() for _ in range(5000)]  # several refills of the pool
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 4 for i in ids)


def test_a_forked_child_does_not_reuse_the_parents_random_bytes():
    new_request_id()  # the parent's pool now holds bytes the child must not hand out again
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child_id and child_id != new_request_id()
