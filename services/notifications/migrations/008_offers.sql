-- What a proposal email and the answer page show of the other person besides expertise and
-- goals (enrolment-updated's offers: what a mentee can share with a mentor; learning_interests:
-- what a mentor would like to learn); blanked with the rest of the contact on erasure. NULL for
-- contacts stored before this column: no line until their next enrolment-updated.
ALTER TABLE contacts ADD COLUMN IF NOT EXISTS offers jsonb;
ALTER TABLE contacts ADD COLUMN IF NOT EXISTS learning_interests jsonb;
