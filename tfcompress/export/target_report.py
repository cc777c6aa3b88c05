"""TargetReport: whether a TFLite model suits one deployment target, and which ops do not."""


class TargetReport:
    """The compatibility verdict of a TFLite model for one target ("cpu", "gpu" or "edgetpu").

    Attributes:
        target: "cpu" (XNNPACK), "gpu" (LiteRT GPU delegate) or "edgetpu" (Coral Edge TPU).
        compatible: True when the model runs on the target (gpu, edgetpu: every op on the
            accelerator; cpu: LiteRT loads it), False when it does not, None when the check
            could not run (see `notes`).
        offending_ops: Ops off the accelerated path, one entry per op instance, formatted
            `"OP_NAME (op #i)"` with a reason where known (cpu: ops XNNPACK does not take).
        delegated_ops: Names of the ops that do run there (for "cpu": delegated to XNNPACK).
        notes: Human-readable lines: the method used and anything the user should know.
        method: How the verdict was obtained (one sentence).

    Example:
        >>> r = TargetReport("edgetpu", False, offending_ops=["CUMSUM (op #3)"], method="op list")
        >>> r.compatible, r.offending_ops
        (False, ['CUMSUM (op #3)'])
    """

    def __init__(self, target, compatible, offending_ops=None, delegated_ops=None, notes=None,
                 method=""):
        if target not in ("cpu", "gpu", "edgetpu"):
            raise ValueError(f"target must be one of 'cpu', 'gpu', 'edgetpu', got {target!r}.")
        if compatible not in (True, False, None):
            raise ValueError(f"compatible must be True, False or None, got {compatible!r}.")
        self.target = target
        self.compatible = compatible
        self.offending_ops = list(offending_ops or [])
        self.delegated_ops = list(delegated_ops or [])
        self.notes = list(notes or [])
        self.method = method

    @property
    def fully_accelerated(self):
        """True when the check ran and every op is on the accelerated path."""
        return self.compatible is True and not self.offending_ops

    @property
    def verdict(self):
        """"compatible", "incompatible" or "unknown" (cpu adds how many ops XNNPACK takes)."""
        word = {True: "compatible", False: "incompatible"}.get(self.compatible, "unknown")
        if self.target == "cpu" and self.compatible:
            n = len(self.delegated_ops) + len(self.offending_ops)
            word += f", {len(self.delegated_ops)}/{n} ops on XNNPACK"
        return word

    def summary(self):
        """One line: target, verdict and the offending ops (at most 8 named, then a count)."""
        text = f"{self.target}: {self.verdict}"
        if self.offending_ops:
            shown = ", ".join(self.offending_ops[:8])
            more = len(self.offending_ops) - 8
            text += f" ({shown}{f', and {more} more' if more > 0 else ''})"
        elif self.compatible is None and self.notes:
            text += f" ({self.notes[0]})"
        return text

    def __repr__(self):
        return f"TargetReport({self.summary()!r})"
