select
    customer_id,
    case
        when number_of_orders >= 8 then 'loyal'
        when number_of_orders >= 4 then 'regular'
        when number_of_orders >= 1 then 'occasional'
        else 'prospect'
    end as segment
from marts.customers
