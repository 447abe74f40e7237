// The service every Thrift peer in tests/peers speaks.
service Greeter {
  string sayHello(1: string name)
  i32 add(1: i32 a, 2: i32 b)
  oneway void ping(1: string note)
}
