"""What a converter and a runtime of one format both read (never one importing the other)."""
