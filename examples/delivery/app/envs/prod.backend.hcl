# Backend settings for prod, passed to `terraform init -backend-config`. The example uses the
# local backend; a real project names its shared state here (bucket, key, lock table, …).
path = "terraform.tfstate"
