"""The wire: awsJson 1.1 routing by X-Amz-Target, schemas, the error envelope, thin handlers."""
