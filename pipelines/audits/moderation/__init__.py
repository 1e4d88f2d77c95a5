"""The content-moderation audit: statements of reasons (DSA Transparency
Database fields) and the process around them (who decided, where, with
which reviewed model)."""
