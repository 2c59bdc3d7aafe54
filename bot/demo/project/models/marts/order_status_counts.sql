select
    status,
    count(order_id) as orders
from marts.orders
group by status
