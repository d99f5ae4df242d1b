"""billing-functions' shared package: domain logic, data access and the processor."""
