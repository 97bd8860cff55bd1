environment = "prod"
replicas    = 3
