-- One row per customer, cleaned from the raw export.
select
    id as customer_id,
    first_name,
    last_name,
    lower(email) as email
from raw.raw_customers
