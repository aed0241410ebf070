"""Build-time tools: Lambda packaging and the files Terraform reads that come from the code."""
