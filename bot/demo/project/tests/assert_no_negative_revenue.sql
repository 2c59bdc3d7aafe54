-- A singular test: the rows it returns are failures.
select order_date, revenue
from marts.revenue_by_day
where revenue < 0
