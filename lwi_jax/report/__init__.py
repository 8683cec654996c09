"""What a study reports: the numbers (results, stats, bootstrap), the text a person reads
(markdown), the files (outputs) and the figures (plots)."""
