module github.com/custody-audit/custody/deploy/kit

go 1.26.0

replace github.com/custody-audit/custody => ../..
