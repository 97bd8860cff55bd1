# The release pull request changes this line; the tag that ships it must carry the same version.
app_version = "1.0.0"
