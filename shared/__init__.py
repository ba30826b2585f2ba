"""The pcaq domain: ARNs, serials, records, the key vault, profiles and validity rules."""
