"""Reading and preparing records as plain functions: sources, the seeded subset, cleaning, splits."""
