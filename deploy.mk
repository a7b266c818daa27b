# Packaging and deployment (make package, make deploy).
