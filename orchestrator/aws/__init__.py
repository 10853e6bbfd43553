"""The AWS adapter: the only package that calls boto3 (EC2, SSM; the lease's store).

`Cloud` (ec2.py) is the pool's view of EC2 and the SSM commands run on its instances;
records.py holds plain records of what EC2 returns, free of boto3.
"""
