// The gate module: see Gate (added with issue 5).
