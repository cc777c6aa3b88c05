"""ConfigObject: what tfcompress's small configuration objects share."""


class ConfigObject:
    """Base of small value objects defined by their `get_config()` (schedules, patterns, schemes).

    A subclass implements `get_config()` (its `__init__` arguments); this base derives
    `from_config`, a readable `repr`, and equality and hashing by class and config.
    """

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash(repr(self))
