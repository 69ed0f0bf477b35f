-- An enrolment token made for the reinstall of one device re-enrols
-- exactly that device (it keeps its id); NULL for ordinary tokens.
ALTER TABLE enrollment_tokens ADD COLUMN reinstall_device_id TEXT;
