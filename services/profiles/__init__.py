"""profiles: the HR ingress. Validates registrations and offboardings, keeps enrolments, publishes
canonical `enrolment-updated` / `enrolment-ended` events through its outbox."""
