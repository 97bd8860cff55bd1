import CLibgit2
enum Placeholder {}
