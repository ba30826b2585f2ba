"""Pure certificate rules: keys and key checks, CSRs, subjects, extension rules, profiles (the AWS
templates), validity, and building certificates. Functions on cryptography objects; no I/O."""
