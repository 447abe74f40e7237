'use strict';
// The service both the Bolt and the Dubbo peer servers expose.
module.exports = {
  interfaceName: 'com.example.Greeter',
  version: '1.0',
  methods: {
    async sayHello(name) { return 'hello ' + name; },
    async plus(a, b) { return a + b; },
    async echo(x) { return x; },
  },
};
