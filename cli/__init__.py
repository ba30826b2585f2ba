"""The ``pcaq`` command line: ``pcaq up`` (the process supervisor and the embedded Redis), the
security and audit commands, and ``pcaq bulk-issue``. It sits above the API and the workers."""
