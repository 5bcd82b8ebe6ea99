"""Batch auditing of logged activations: the log format (``logformat``), capture into it
(``writer``), the resumable audit (``runner``), merge, report and HTTP jobs. See README.md."""
