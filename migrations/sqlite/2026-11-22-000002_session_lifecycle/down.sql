DROP INDEX sessions_store_customer;
