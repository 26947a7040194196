-- One database per service (docker-compose.yml); each service keeps its
-- tables in a schema of its own inside it as well.
CREATE DATABASE shop_order;
CREATE DATABASE shop_stock;
CREATE DATABASE shop_payment;
CREATE DATABASE shop_gateway;
