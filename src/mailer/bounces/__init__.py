"""Bounces and complaints that arrive by mail after the relay took a message: reading
them (files, Maildir, mbox, IMAP), finding what failed for whom, and what it does."""
