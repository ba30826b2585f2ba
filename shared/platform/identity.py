"""Who is calling: the account, region and partition a request acts in."""

from __future__ import annotations

from dataclasses import dataclass

from pcaq.platform.partitions import partition_of


@dataclass(frozen=True)
class Caller:
    """The authenticated (or, in open development mode, assumed) caller of one request.

    ``partition`` left empty is the partition of ``region`` (``aws-cn`` for ``cn-north-1``...), as AWS
    writes it in ARNs; ``PCAQ_PARTITION`` passes one explicitly.
    """

    account: str
    region: str
    partition: str = ""
    access_key: str | None = None

    def __post_init__(self) -> None:
        if not self.partition:
            # frozen: the derived value is set once, here, as the constructor would have
            object.__setattr__(self, "partition", partition_of(self.region))
