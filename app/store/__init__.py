"""What the service keeps: MongoDB and its collections, the Redis cache, files on disk, retries of a store."""
