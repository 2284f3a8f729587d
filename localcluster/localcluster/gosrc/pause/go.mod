module localcluster.invalid/pause

go 1.22
