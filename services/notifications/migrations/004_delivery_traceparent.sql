-- The trace context of the event that caused a notification, so its delivery joins the trace
-- that started with the HR system's event.
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS traceparent text;
