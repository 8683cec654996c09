"""What a study reports: the numbers (results, stats, bootstrap), the text a person reads
(markdown and its sections: text_format, paid_markdown, decision_markdown,
scores_markdown), the files (outputs) and the figures (plots)."""
