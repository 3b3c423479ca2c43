"""notifications: tells mentors and mentees what matching decided, by email or tenant webhook.

Consumed events only ever write delivery rows (one transaction per batch, like every service);
a separate delivery worker sends them, retries with backoff and reports each outcome through
the outbox. See docs/notifications.md.
"""
