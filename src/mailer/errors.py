"""The one exception root. Every message says what was wrong and how to fix it; the CLI
prints it without a traceback and exits 1."""


class MailerError(Exception):
    """A failure the user must fix."""


class ConfigError(MailerError):
    """The configuration file or a MAILER_* variable holds a bad value."""


class SourceError(MailerError):
    """An article source cannot be read or understood."""


class SubscriberError(MailerError):
    """A subscriber operation was refused (bad address, duplicate, unknown)."""


class DeliveryError(MailerError):
    """Sending cannot go on (the SMTP server is unreachable or refuses us)."""


class EditorError(MailerError):
    """An account of the desk was refused (bad address, duplicate, short password, unknown)."""
