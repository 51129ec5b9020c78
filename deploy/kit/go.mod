module github.com/custody-audit/custody/deploy/kit

go 1.26.0

replace github.com/custody-audit/custody => ../..

require github.com/custody-audit/custody v0.0.0-00010101000000-000000000000
