"""What every target is judged by: the accuracy metrics, the one timing protocol, budgets."""
