print("histogram")
