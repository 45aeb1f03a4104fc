"""mailer: turns a newsroom's articles into a newsletter with its donation appeal and
sends it to every subscriber over SMTP, never twice and never losing one."""

__version__ = "0.1.0"
