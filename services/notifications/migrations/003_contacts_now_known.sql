-- Whether a delivery's recipient (and partner, when there is one) are known now; used when a
-- worker parks a row "waiting for contact", to close the race with the contact's arrival.
CREATE FUNCTION contacts_now_known(d deliveries) RETURNS boolean LANGUAGE sql STABLE
    SET search_path FROM CURRENT AS $$
    SELECT EXISTS (SELECT 1 FROM contacts c WHERE c.tenant_id = d.tenant_id AND c.person_id = d.recipient_id)
       AND (d.partner_id IS NULL
            OR EXISTS (SELECT 1 FROM contacts c WHERE c.tenant_id = d.tenant_id AND c.person_id = d.partner_id))
$$;
