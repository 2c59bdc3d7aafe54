select
    order_date,
    count(*) as orders,
    sum(amount) as revenue
from marts.orders
where status <> 'returned'
group by order_date
