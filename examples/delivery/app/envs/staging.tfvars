environment = "staging"
replicas    = 2
