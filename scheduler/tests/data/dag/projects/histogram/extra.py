print("extra")
