"""mentornet's own library: event contract, settings, logging, Kafka and PostgreSQL plumbing."""
