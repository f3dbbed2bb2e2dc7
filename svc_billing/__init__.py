"""BillingService: exactly one coded charge for every completed visit."""
