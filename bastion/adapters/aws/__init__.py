"""The only importer of boto3/botocore: EC2, SSM and STS, split by concern."""
