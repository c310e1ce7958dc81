"""`hpml bench` (a matrix of training runs) and `hpml report` (a table over run folders)."""
