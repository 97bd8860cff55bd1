# Backend settings for dev, passed to `terraform init -backend-config`. Where the state
# lives must outlive a run: Lockstep removes each run's folder afterwards, so a relative
# path here would start every run from empty state (and plan to create what exists).
# scripts/demo.sh replaces this file in the delivery repo it makes with an absolute
# path under examples/state/tfstate/; a real project names shared state here (bucket,
# key, lock table, …) instead of a local file.
path = "terraform.tfstate"
