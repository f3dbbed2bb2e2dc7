"""ConsentService: patient consents with a hash-chained audit trail."""
